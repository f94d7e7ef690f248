"""Tests of the Exchange simulator (sim/): store, protocols, server, booking stand-in."""
