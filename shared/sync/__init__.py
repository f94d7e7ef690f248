"""Sync services: carry out the engine's decisions through the calendar port."""
