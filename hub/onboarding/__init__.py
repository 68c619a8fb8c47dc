"""Live onboarding: devices and checkpoints added, changed and retired while the hub runs."""
