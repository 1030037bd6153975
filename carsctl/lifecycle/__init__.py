"""Starting, stopping and checking the stack's processes: what each node runs with (node_specs), the
typed results and their exit codes (node_results), the process side shared by every node (node_control),
workers (worker_nodes), beat (beat_node), Flower (flower_node), `up`/`down` (stack_steps) and the systemd
units (systemd_units). Plain functions returning typed results; the commands render them."""
