"""Text in and out: tokenizers, detokenizer, stop strings, harmony, tool prompts and tool-call parsing."""
