"""usage-events: what users do in the product."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

from triggerstream.events.envelope import EmptyProperties, Envelope, Properties, empty
from triggerstream.events.fields import Amount, Name, Quantity


class UsageEnvelope(Envelope):
    topic: ClassVar[str] = "usage-events"
    short_topic: ClassVar[str] = "usage"


class FeatureUsedProperties(Properties):
    feature: Name
    quantity: Quantity = 1


class QuotaUsageProperties(Properties):
    resource: Name
    used: Amount
    limit: Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _finite_fraction(self) -> QuotaUsageProperties:
        if not math.isfinite(self.used / self.limit):
            raise ValueError(f"used/limit ({self.used}/{self.limit}) is not a finite number")
        return self


class LockedFeatureClickedProperties(Properties):
    feature: Name
    required_plan: Name | None = None


class WorkflowStartedProperties(Properties):
    workflow: Name
    critical: StrictBool = False


class WorkflowCompletedProperties(Properties):
    workflow: Name


class OnboardingStepCompletedProperties(Properties):
    step: Name
    index: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    total: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _index_within_total(self) -> OnboardingStepCompletedProperties:
        if self.index is not None and self.total is not None and self.index > self.total:
            raise ValueError(f"index {self.index} is past total {self.total}")
        return self


class SessionStartedProperties(Properties):
    platform: Name | None = None


class FeatureUsed(UsageEnvelope):
    type: Literal["feature_used"] = "feature_used"
    properties: FeatureUsedProperties = Field(default_factory=empty)


class QuotaUsage(UsageEnvelope):
    type: Literal["quota_usage"] = "quota_usage"
    properties: QuotaUsageProperties = Field(default_factory=empty)


class LockedFeatureClicked(UsageEnvelope):
    type: Literal["locked_feature_clicked"] = "locked_feature_clicked"
    properties: LockedFeatureClickedProperties = Field(default_factory=empty)


class WorkflowStarted(UsageEnvelope):
    type: Literal["workflow_started"] = "workflow_started"
    properties: WorkflowStartedProperties = Field(default_factory=empty)


class WorkflowCompleted(UsageEnvelope):
    type: Literal["workflow_completed"] = "workflow_completed"
    properties: WorkflowCompletedProperties = Field(default_factory=empty)


class OnboardingStepCompleted(UsageEnvelope):
    type: Literal["onboarding_step_completed"] = "onboarding_step_completed"
    properties: OnboardingStepCompletedProperties = Field(default_factory=empty)


class SessionStarted(UsageEnvelope):
    type: Literal["session_started"] = "session_started"
    properties: SessionStartedProperties = SessionStartedProperties()


class SessionEnded(UsageEnvelope):
    type: Literal["session_ended"] = "session_ended"
    properties: EmptyProperties = EmptyProperties()
