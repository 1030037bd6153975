"""Everything generated from the command tree: the shell completion scripts (completion_scripts, with
their templates), the caches they read (completion_cache) and the README command reference
(command_reference)."""
