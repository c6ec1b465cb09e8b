"""The window's panels and tabs: widgets that show state and emit what the user asked for."""
