"""High availability: leader election among the replicas of one virtual node, and the write fence."""
