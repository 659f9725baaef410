"""The live web viewer (viser): a run's scene rendered from the browser's camera, while it trains
(``trainer.viewer=true``) or afterwards (``python -m nerfexp.view run=<dir>``)."""
