"""Several hubs on a NATS JetStream cluster: partitioned intake, leases, handover."""
