"""Starting, stopping and checking the stack's processes: what each node runs with (node_specs), the
process side shared by every node (node_control), workers, beat, Flower, `up`/`down` (stack_steps) and
the systemd units. Plain functions returning typed results; the commands render them."""
