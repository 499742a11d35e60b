"""Automated quality checks (INDICATORS.md): one small module per check, a runner that stores
their findings in `dnma.quality_alerts`, the school calendar they skip, and the notifications."""
