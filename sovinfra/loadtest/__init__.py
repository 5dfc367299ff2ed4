"""Load tests for OpenAI-compatible streaming endpoints: client, load shapes, metrics, self-check."""
