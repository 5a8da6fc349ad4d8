"""What the user asked for, checked without a model and without torch."""
