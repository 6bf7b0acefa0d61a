"""The one word the big control shows, from the worker's Status and the controller's ListenState.

The worker knows about loading and generating; the controller knows about the microphone and
playback. While a turn is generated the worker wins; around it (idle, duplex) the controller
says whether we are listening, hearing the user, or still playing the agent's answer.
"""

from __future__ import annotations

# Worker states that say everything on their own.
_WORKER_FIRST = {"loading": "loading", "warming_up": "warming_up", "preparing": "warming_up",
                 "error": "error", "stopped": "stopped", "thinking": "thinking", "buffering": "buffering",
                 "speaking": "speaking", "previewing": "previewing"}


def display_state(worker_state: str, listen_state: str, model_ready: bool, audio_ok: bool = True) -> str:
    """Args:
        worker_state: the last `Status.state` ("" before any).
        listen_state: the last `ListenState.state` ("" before any).
        model_ready: a conversation is ready (voice and persona prompts done).
        audio_ok: the audio devices are open (without them nothing can be heard or said).
    """
    if not audio_ok and worker_state not in ("loading", "warming_up", "preparing", "error", "stopped"):
        return "no_audio"  # "ready" would promise what cannot happen
    if worker_state in _WORKER_FIRST:
        return _WORKER_FIRST[worker_state]
    if not model_ready:
        return "no_model" if not worker_state else "loading"
    if listen_state == "waiting":
        return "thinking"  # a turn was submitted; the worker has not said "thinking" yet
    if listen_state in ("listening", "hearing_you", "speaking", "replaying", "stopped", "ready"):
        return listen_state
    return "ready"
