"""The calendar port's contract suite: one set of behaviours, every implementation."""
