"""Several choices from one request: ``n`` per prompt, or one per prompt of a list, each a native call of its own
running at once (the inference scheduler gives each a slot), joined into one OpenAI answer or stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import anyio

from corral_api.openai.responses import NativeStream

T = TypeVar("T")
_END = object()


async def gathered(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of calls run at once, in order; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def _pump(index: int, stream: AsyncIterator[T], queue: asyncio.Queue) -> None:
    """Forward one stream's items (then its end, or its error) to the queue, tagged with its index."""
    try:
        async with aclosing(stream):
            async for item in stream:
                await queue.put((index, item, None))
    except Exception as exc:  # handed to the consumer, which raises it in its own task
        await queue.put((index, None, exc))
        return
    await queue.put((index, _END, None))


async def _indexed(stream: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    async with aclosing(stream):
        async for item in stream:
            yield 0, item


def merged(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Items of several streams as they come, with the index of their stream; the first error ends them all,
    and so does closing this one (each stream is closed, so its generation is cancelled upstream).

    One stream (every request without ``n``) is read in place: a pump task and its queue would cost two task
    switches per token on the gateway's event loop."""
    return _indexed(streams[0]) if len(streams) == 1 else _pumped(streams)


async def _pumped(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    queue: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.ensure_future(_pump(i, s, queue)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item, error = await queue.get()
            if error is not None:
                raise error
            if item is _END:
                running -= 1
                continue
            yield index, item
    finally:
        await _stopped(tasks)


async def _stopped(tasks: list[asyncio.Task]) -> None:
    """Cancel the pumps once each and wait, shielded, until they have closed their streams.

    Once: a pump closes its upstream response (httpcore's close is shielded from the cancel scope that ends a
    request whose client left, not from a second ``task.cancel()``). Cancelling ``gather`` would cancel every
    pump again, cutting that close short: the connection stayed open and inference generated on for minutes."""
    for task in tasks:
        task.cancel()
    if tasks:
        with anyio.CancelScope(shield=True):
            await asyncio.wait(tasks)


def combined_usage(usages: list[dict[str, Any]], group: int) -> dict[str, Any]:
    """One usage for several choices: completion tokens summed, each prompt counted once (choices come in
    groups of ``group`` per prompt)."""
    prompts = usages[::group]
    prompt = sum(u.get("prompt_tokens", 0) for u in prompts)
    completion = sum(u.get("completion_tokens", 0) for u in usages)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if any("prompt_tokens_details" in u for u in prompts):
        cached = sum(u.get("prompt_tokens_details", {}).get("cached_tokens", 0) for u in prompts)
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def combined(answers: list[dict[str, Any]], group: int) -> dict[str, Any]:
    """Single-choice answers (``chat.completion`` or ``text_completion``) as one, choices indexed in order."""
    choices = [{**answer["choices"][0], "index": i} for i, answer in enumerate(answers)]
    return {**answers[0], "choices": choices, "usage": combined_usage([a["usage"] for a in answers], group)}


def _is_usage(event: dict[str, Any]) -> bool:
    return not event.get("choices") and "usage" in event


async def combined_stream(natives: Sequence[AsyncIterator[dict[str, Any]]], converters: Sequence[NativeStream],
                          group: int) -> AsyncIterator[dict[str, Any]]:
    """Native streams run at once, each translated by its converter (which knows its choice index); the
    converters' usage chunks are held back and sent once, combined, at the end."""
    usages: list[dict[str, Any] | None] = [None] * len(natives)
    async with aclosing(merged(natives)) as chunks:
        async for index, chunk in chunks:
            for event in converters[index].translate(chunk):
                if _is_usage(event):
                    usages[index] = event
                else:
                    yield event
    held = [u for u in usages if u is not None]
    if held:
        yield {**held[0], "usage": combined_usage([u["usage"] for u in held], group)}
