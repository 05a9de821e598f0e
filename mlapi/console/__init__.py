"""The web console served at `/`, a surface of its own: its routes (routes.py, the
`console` dialect), its files (static/: plain HTML, CSS and one script, no build step and
nothing from elsewhere), the client configuration it shows next to a key (snippets.py) and
the status history it charts (history.py)."""
