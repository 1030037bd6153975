"""Is everything OK? Reachability of the broker and database (connectivity), the `status` overview
(overview), the beat schedule with its last and next runs (beat_schedule) and the `doctor` checks
(checkup)."""
