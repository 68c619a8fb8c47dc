"""Batched state-store writes that set one bad row aside instead of losing its neighbours."""
