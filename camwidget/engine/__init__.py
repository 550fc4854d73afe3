"""The explainer engine: hooks, layer discovery, batching/precision and the Explainer itself."""
