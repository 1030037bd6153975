"""Process plumbing, with no Celery in it: detached spawn and signals (supervise), node state files
(nodes), the embedded Redis (embedded_redis), and reading the nodes' log files (logtail)."""
