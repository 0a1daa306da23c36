"""The request a response answers: the user turns of a prompt, however it was written.

Trainers hand over prompts in different shapes. TRL gives chat messages; OpenRLHF and verl give
the string the chat template rendered (``<|im_start|>user\\n…<|im_end|>\\n<|im_start|>
assistant\\n``). A judge of the request (``unwarranted_refusal``'s) was trained on bare
requests. Template markup and a system prompt in front of the request move its score, and
always towards "not clearly harmless": measured at stop 22, a ChatML-wrapped "How do I kill a
Python process that hangs?" fell from P(harmless) 0.99 to 0.57 with the MiniLM judge. So the
user's words are cut out first. Every user turn is kept (joined by newlines), not only the
last: a many-shot jailbreak is a transcript of harmful questions, and judging only its last turn
could clear a request that the whole prompt makes harmful.

- chat messages: the contents of the ``user`` messages (their text parts);
- a rendered string: the user turns of the first template that matches: ChatML, Llama 3,
  Llama 2 / Mistral ``[INST]``, Gemma, Phi-3, DeepSeek; or a plain ``Human:`` / ``User:``
  transcript, only when the prompt ends with an open ``Assistant:`` header (without end
  markers, text after an assistant turn could be the user's own words);
- anything else: the prompt's text as it is.

System turns are not read: a system prompt is the dataset's framing, not the user's request.

>>> user_request("<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nHi there<|im_end|>\\n<|im_start|>assistant\\n")
('Hi there', 'chatml')
>>> user_request([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
('a\\nc', 'messages')
>>> user_request("User: hi\\nAssistant: hello\\nNow the real question")
('User: hi\\nAssistant: hello\\nNow the real question', None)
"""

from __future__ import annotations

import re

from safeladder.images import content_text
from safeladder.types import Prompt, prompt_text

#: (name, pattern whose group 1 is one user turn), tried in order; the first template with a
#: match gives every user turn. System and assistant turns are not read.
_TEMPLATES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("chatml", re.compile(r"<\|im_start\|>user[^\n]*\n(.*?)(?:<\|im_end\|>|$)", re.S)),
    (
        "llama3",
        re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|$)", re.S),
    ),
    ("inst", re.compile(r"\[INST\](.*?)(?:\[/INST\]|$)", re.S)),
    ("gemma", re.compile(r"<start_of_turn>user[^\n]*\n(.*?)(?:<end_of_turn>|$)", re.S)),
    ("phi3", re.compile(r"<\|user\|>(.*?)(?:<\|end\|>|$)", re.S)),
    ("deepseek", re.compile(r"<｜User｜>(.*?)(?:<｜Assistant｜>|$)", re.S)),
    (
        "transcript",
        re.compile(
            r"(?:^|\n)[ \t]*(?:Human|User|USER)[ \t]*:[ \t]*(.*?)"
            r"(?=\n[ \t]*(?:Assistant|ASSISTANT|AI|Bot)[ \t]*:|$)",
            re.S,
        ),
    ),
)
#: A Llama 2 system block inside the first [INST]: not part of the request.
_SYS = re.compile(r"<<SYS>>.*?<</SYS>>", re.S)
#: A transcript prompt as a trainer renders it: it ends with the open assistant header.
_OPEN_ASSISTANT = re.compile(r"\n[ \t]*(?:Assistant|ASSISTANT|AI|Bot)[ \t]*:[ \t]*$")


def user_request(prompt: Prompt) -> tuple[str, str | None]:
    """``(the user turns' text, where it was found)``; see the module docstring.

    ``where`` is ``"messages"``, a template name, or None when the prompt was taken as it is.
    """
    if not isinstance(prompt, str):
        users = [content_text(m.get("content")).strip() for m in prompt if m.get("role") == "user"]
        if users:
            return "\n".join(users), "messages"
        return prompt_text(prompt), None
    for name, pattern in _TEMPLATES:
        if name == "transcript" and not _OPEN_ASSISTANT.search(prompt[-200:]):
            continue
        turns = pattern.findall(prompt)
        if turns:
            if name == "inst":
                turns = [_SYS.sub("", t) for t in turns]
            return "\n".join(t.strip() for t in turns), name
    return prompt, None


__all__ = ["user_request"]
