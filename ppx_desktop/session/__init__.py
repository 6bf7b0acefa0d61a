"""The conversation API (Conversation: respond, respond_stream, respond_diagnostic, duplex step)
and the inference thread that owns the model (InferenceWorker). No Qt here."""
