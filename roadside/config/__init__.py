"""Configuration shared by the box, the station and provisioning: the section base, the
one-line error wording, TOML loading, the broker link, and the agent's schema."""
