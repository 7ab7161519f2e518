"""RepMix application: `provjax attribute`, the generator zoo's release, RepMix's release, bench."""
