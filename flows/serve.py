"""`sousuo serve`: the flows as Prefect deployments on the schedules from the configuration."""

from __future__ import annotations

from datetime import timedelta

from prefect import serve

from pipeline.config import Settings

from .build import build_flow
from .retrain import retrain_flow, retrain_from_clicks_flow
from .update import update_flow


def deployments(corpus: list[str], index: str, settings: Settings, update_interval: int | None = None) -> list:
    parameters = {"corpus": corpus, "index": index}
    update_schedule = ({"interval": timedelta(seconds=update_interval)} if update_interval
                       else {"cron": settings.schedule.update_cron})
    out = [
        update_flow.to_deployment(name="sousuo-update", parameters=parameters, **update_schedule),
        build_flow.to_deployment(name="sousuo-rebuild", parameters=parameters, cron=settings.schedule.rebuild_cron),
    ]
    if settings.schedule.retrain_from_clicks:
        judgments = settings.schedule.judgments
        out.append(retrain_from_clicks_flow.to_deployment(
            name="sousuo-retrain-from-clicks", cron=settings.schedule.retrain_cron,
            parameters={"index": index, "source": settings.schedule.retrain_from_clicks,
                        "judgments": str(judgments) if judgments else None, "split": settings.schedule.judgments_split},
        ))
    elif settings.schedule.judgments:
        out.append(retrain_flow.to_deployment(
            name="sousuo-retrain", cron=settings.schedule.retrain_cron,
            parameters={"index": index, "judgments": str(settings.schedule.judgments),
                        "split": settings.schedule.judgments_split},
        ))
    return out


def serve_flows(corpus: list[str], index: str, settings: Settings, update_interval: int | None = None) -> None:
    """Blocks, running each flow when its schedule fires, until interrupted."""
    serve(*deployments(corpus, index, settings, update_interval))
