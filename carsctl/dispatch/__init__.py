"""Manual task dispatch: names and the catalog (task_catalog), argument conversion (arguments),
sending one or many (sending), results and revoke (task_results), the failed-task registry
(failed_registry), and posts fed through the pipeline by hand (post_runs)."""
