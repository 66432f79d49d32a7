"""DSA-110 continuum survey data platform."""
