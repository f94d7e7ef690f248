"""Pure sync decisions, no I/O: given what the booking platform wants and what Exchange shows,
decide what to write. ``reconcile`` holds the booking → Exchange direction."""
