"""FAQ knowledge base (《答客问》): what agents answer with while the caller waits.

Articles belong to an estate or, without one, to every estate. The search
matches the question, the answer, the tags and the pinyin of question and
tags (full and initials), so an agent can type `tingche` or `tc` for 停车
without switching the input method; every word typed must match.

When nothing answers the caller, the agent sends the question on ("no answer
found"): it waits as a task on the manager's FAQ page (请示管理处经理), and
the manager's answer becomes a new article and closes the task
(补充《答客问》).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.api import ctx, form_data, gettext, realtime, redirect, render, toast, transaction, now
from core.people import pinyin_keys
from plugins.hotline.call_models import Call, FaqArticle, FaqQuestion, FaqQuestionStatus

QUESTION_MAX = 255
ANSWER_MAX = 8000
TAGS_MAX = 255
RESULTS = 20


# Core's clock, so the test kit's frozen time reaches these pages too.
clock = now


def search_keys(question: str, answer: str, tags: str) -> str:
    """The lowercase text a search matches: words as written plus pinyin of question and tags."""
    parts = [question, tags, answer]
    for text in (question, *re.split(r"[,，]", tags)):
        if text.strip():
            parts.extend(pinyin_keys(text))
    return " ".join(part.lower() for part in parts if part)


def clean_tags(raw: str) -> str:
    tags = [t.strip() for t in re.split(r"[,，]", raw or "") if t.strip()]
    return ", ".join(dict.fromkeys(tags))


def visible_q(project_id: int) -> Q:
    # Articles without a project are head office's, for every estate: not a scope leak.
    return Q(project_id=project_id) | Q(project_id__isnull=True)


async def search(project_id: int, text: str) -> list[FaqArticle]:
    query = FaqArticle.filter(visible_q(project_id), is_active=True)
    for word in text.lower().split()[:8]:
        query = query.filter(search_keys__contains=word)
    return await query.order_by("question").limit(RESULTS)


def check_article(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Cleaned question/answer/tags and the errors of a submitted article."""
    cleaned = {
        "question": (values.get("question") or "").strip(),
        "answer": (values.get("answer") or "").strip(),
        "tags": clean_tags(values.get("tags", "")),
    }
    errors: dict[str, str] = {}
    if not cleaned["question"]:
        errors["question"] = gettext("Write the question as customers ask it.")
    elif len(cleaned["question"]) > QUESTION_MAX:
        errors["question"] = gettext("At most %(n)s characters.", n=QUESTION_MAX)
    if not cleaned["answer"]:
        errors["answer"] = gettext("Write the answer agents should give.")
    elif len(cleaned["answer"]) > ANSWER_MAX:
        errors["answer"] = gettext("At most %(n)s characters.", n=ANSWER_MAX)
    if len(cleaned["tags"]) > TAGS_MAX:
        errors["tags"] = gettext("At most %(n)s characters.", n=TAGS_MAX)
    return cleaned, errors


async def create_article(project_id: int | None, question: str, answer: str, tags: str, author_id: int) -> FaqArticle:
    return await FaqArticle.create(
        project_id=project_id, question=question, answer=answer, tags=tags,
        search_keys=search_keys(question, answer, tags), created_by_id=author_id,
    )


def _article_project(request: Request, values: dict[str, str]) -> int | None:
    """This estate, or every estate when head office asks for it."""
    context = ctx(request)
    if values.get("scope") == "all" and context.principal.can("hotline.manage_faq", None) and context.principal.is_head_office:
        return None
    return context.project.id


# Views ------------------------------------------------------------------------


class _AlreadyAnswered(Exception):
    """Rolls back the new article when another manager closed the question first."""


async def faq_page(request: Request, *, status_code: int = 200, **extra) -> Response:
    context = ctx(request)
    project = context.project
    text = request.query_params.get("q", "").strip()[:100]
    manager = context.principal.can("hotline.manage_faq", project.id)
    data = {
        "q": text,
        "articles": await search(project.id, text) if text else [],
        "open_questions": await FaqQuestion.filter(status=FaqQuestionStatus.OPEN).select_related("asked_by") if manager else [],
        "manager": manager,
        "head_office": context.principal.is_head_office,
        "base": f"/p/{project.code}/hotline/faq",
        "errors": {},
        "values": {},
        "article_count": await FaqArticle.filter(visible_q(project.id), is_active=True).count(),
        **extra,
    }
    return await render(request, "hotline/faq/page.html", data, block="results" if "q" in request.query_params else None,
                        status_code=status_code)


async def faq_view(request: Request) -> Response:
    return await faq_page(request)


async def ask(request: Request) -> Response:
    """No answer found: the question goes to the manager as a task."""
    context = ctx(request)
    values = await form_data(request)
    question = (values.get("question") or "").strip()
    errors: dict[str, str] = {}
    if not question:
        errors["ask"] = gettext("Write the caller's question.")
    elif len(question) > 2000:
        errors["ask"] = gettext("At most %(n)s characters.", n=2000)
    call_id = None
    if values.get("call", "").isdigit():
        call = await Call.get_or_none(id=int(values["call"]))
        call_id = call.id if call else None
    if errors:
        return await faq_page(request, status_code=422, errors=errors, values=values)
    from plugins.hotline.workorders import users_with_permission

    async with transaction():
        task = await FaqQuestion.create(
            project_id=context.project.id, question=question, asked_by_id=context.principal.id, asked_at=clock(),
            call_id=call_id,
        )
        for manager in await users_with_permission(context.project.id, "hotline.manage_faq"):
            if manager.id != context.principal.id:
                await realtime.publish(realtime.user_channel(manager.id), "faq_question", {
                    "question": task.id,
                    "toast": gettext("A question for the FAQ is waiting for your answer."),
                })
    message = gettext("Sent to the manager. The answer will be added to the FAQ.")
    if request.headers.get("hx-request"):
        return toast(await faq_page(request), message)
    return redirect(request, f"/p/{context.project.code}/hotline/faq", message)


async def answer(request: Request) -> Response:
    """The manager answers a waiting question: a new article, and the task is closed."""
    context = ctx(request)
    question: FaqQuestion = request.state.record
    values = await form_data(request)
    cleaned, errors = check_article(values)
    if question.status != FaqQuestionStatus.OPEN:
        errors["answer_task"] = gettext("This question has already been answered.")
    if errors:
        return await faq_page(request, status_code=422, errors=errors, values=values, answering=question.id)
    try:
        async with transaction():
            article = await create_article(
                _article_project(request, values), cleaned["question"], cleaned["answer"], cleaned["tags"],
                context.principal.id,
            )
            # Compare-and-set: two managers answering at once make one article, not two.
            closed = await FaqQuestion.filter(id=question.id, status=FaqQuestionStatus.OPEN).update(
                status=FaqQuestionStatus.ANSWERED, answered_by_id=context.principal.id, answered_at=clock(),
                article_id=article.id,
            )
            if not closed:
                raise _AlreadyAnswered
            await realtime.publish(realtime.user_channel(question.asked_by_id), "faq_answered", {
                "article": article.id, "toast": gettext("Your FAQ question has been answered."),
            })
    except _AlreadyAnswered:
        return await faq_page(
            request, status_code=422, values=values,
            errors={"answer_task": gettext("This question has already been answered.")},
        )
    return redirect(request, f"/p/{context.project.code}/hotline/faq", gettext("Answer added to the FAQ."))


async def new_article(request: Request) -> Response:
    context = ctx(request)
    values = await form_data(request)
    cleaned, errors = check_article(values)
    if errors:
        return await faq_page(request, status_code=422, errors=errors, values=values, writing=True)
    await create_article(_article_project(request, values), cleaned["question"], cleaned["answer"], cleaned["tags"], context.principal.id)
    return redirect(request, f"/p/{context.project.code}/hotline/faq", gettext("Article added to the FAQ."))


def routes() -> list:
    from core.api import route

    return [
        route("/faq", faq_view, name="hotline_faq", permission="hotline.faq"),
        route("/faq/questions", ask, methods=["POST"], name="hotline_faq_ask", permission="hotline.faq"),
        route(
            "/faq/questions/{id:int}/answer", answer, methods=["POST"], name="hotline_faq_answer",
            permission="hotline.manage_faq", model="hotline.FaqQuestion",
        ),
        route("/faq/articles", new_article, methods=["POST"], name="hotline_faq_new", permission="hotline.manage_faq"),
    ]
