"""Performance comparisons that back every speed claim."""
