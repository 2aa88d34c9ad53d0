"""A sample domain: direct messages between users, each one turning into an event."""
