"""Device profiles: device knowledge as data (one YAML file per model)."""
