"""Everything generated from the command tree: the shell completion scripts (completion_specs: the
command tree as completion specs; completion_scripts: the scripts filled in from templates/), the caches
they read (completion_cache) and the README command reference (command_reference)."""
