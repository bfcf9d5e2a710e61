"""What keeps a long run alive on a cluster: resume from the newest complete checkpoint, stop cleanly on
preemption, tear down the process group without aborting, log the parallel strategy, trace trained ids."""
