"""TruFor application: `provjax detect`, `provjax convert trufor`, release, bench."""
