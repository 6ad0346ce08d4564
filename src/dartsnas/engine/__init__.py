"""The loops that drive search and training; they know nothing of argv or pictures."""
