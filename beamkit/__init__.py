"""beamkit: beam search over text-to-image prompts, streamed as events."""
__version__ = "0.1.0"
