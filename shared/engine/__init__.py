"""Pure sync decisions and the domain rules they rest on, no I/O: ``reconcile`` (booking →
Exchange: what to write so the organizer's calendar shows the appointment), ``content`` (an
appointment as an event draft) and ``marker`` (the property that tags calbridge's events)."""
