"""Is everything OK? Reachability of the broker and database (connectivity), the `status` overview
(overview) and the `doctor` checks (checkup)."""
