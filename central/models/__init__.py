"""Central's SQLAlchemy models; importing this module registers every table on `Base.metadata`."""

from central.models.analytics import AnalyticsCursor, AnalyticsEvent, AnalyticsSubject
from central.models.approvals import OpenRequest
from central.models.banks import Bank, BankCapacity, Compartment
from central.models.base import (
    ACTIVE_STATUSES,
    Actor,
    BankStatus,
    Base,
    CompartmentState,
    ReservationStatus,
    SizeClass,
)
from central.models.carriers import ApiKey, Carrier
from central.models.courier_codes import StoredCourierCode
from central.models.leases import Lease
from central.models.nodes import (
    Alert,
    EnrollmentToken,
    Node,
    NodeCommand,
    NodeEventRecord,
    NodeNonce,
)
from central.models.notices import Notice
from central.models.occupancy import OccupancySample
from central.models.operators import (
    OperatorAccount,
    OperatorAuditEntry,
    OperatorLink,
    OperatorLoginFailure,
    OperatorSession,
)
from central.models.paging import PageOutbox, PageScan, PageSubscription, PageTarget
from central.models.reservations import Reservation, ReservationEvent
from central.models.tracking import TrackingEventRecord
from central.models.updates import NodeRollout, NodeRolloutBank, NodeUpdateStatus
from central.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ACTIVE_STATUSES",
    "Actor",
    "Alert",
    "AnalyticsCursor",
    "AnalyticsEvent",
    "AnalyticsSubject",
    "ApiKey",
    "Bank",
    "BankCapacity",
    "BankStatus",
    "Base",
    "Carrier",
    "Compartment",
    "CompartmentState",
    "EnrollmentToken",
    "Lease",
    "Node",
    "NodeCommand",
    "NodeEventRecord",
    "NodeNonce",
    "NodeRollout",
    "NodeRolloutBank",
    "NodeUpdateStatus",
    "Notice",
    "OccupancySample",
    "OpenRequest",
    "OperatorAccount",
    "OperatorAuditEntry",
    "OperatorLink",
    "OperatorLoginFailure",
    "OperatorSession",
    "PageOutbox",
    "PageScan",
    "PageSubscription",
    "PageTarget",
    "Reservation",
    "ReservationEvent",
    "ReservationStatus",
    "SizeClass",
    "StoredCourierCode",
    "TrackingEventRecord",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
