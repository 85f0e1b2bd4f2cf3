"""Preference data: Arrow schemas, readers and converters, validation with quarantine."""
