"""The command-line half of the ways in: `evoprune` (main.py), one module per sub-command (commands.py)."""
