"""Case models shared by several cases (a case's model.py usually just re-exports one)."""
