"""Small reusable widgets, the table model, the theme: no knowledge of runs or controllers."""
