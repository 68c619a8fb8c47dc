"""Hazard evidence: photos and documents checked, cleaned and stored by content."""
