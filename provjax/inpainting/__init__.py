"""SafePaint application: `inpaint`, evaluation, red-team loop, release, bench."""
