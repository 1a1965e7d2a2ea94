"""The one place that owns the shared objects: built once by create_app, kept on
`app.state.services`, and handed to route handlers as their `services` parameter
(`services.billing`, `services.payments` ...). Nothing builds a service per request."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment
from litestar.di import NamedDependency, Provide

from portal.accounts.linking import LinkingService
from portal.accounts.profile import ProfileService
from portal.accounts.recovery import RecoveryService
from portal.accounts.registration import RegistrationService
from portal.accounts.signin import SignInService
from portal.accounts.two_step import TwoStepService
from portal.autopay.charges import Charger
from portal.autopay.expiry import ExpiryService
from portal.autopay.methods import MethodsService
from portal.autopay.saved_pay import SavedPayService
from portal.autopay.scheduled import ScheduledService
from portal.autopay.service import AutoPayService
from portal.billing.service import BillingService
from portal.db import Database
from portal.mail import Mailer, OutboxSender
from portal.notices.service import NoticesService
from portal.payments.sandbox import SandboxGateway
from portal.payments.service import PaymentsService
from portal.payments.stripe_gateway import StripeGateway
from portal.security.throttle import Budget
from portal.settings import Settings
from portal.staff.accounts import StaffAuthService
from portal.staff.console import ConsoleService
from portal.staff.oversight import OversightService


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    mailer: Mailer
    sender: OutboxSender
    sandbox: SandboxGateway
    registration: RegistrationService
    signin: SignInService
    recovery: RecoveryService
    profiles: ProfileService
    two_step: TwoStepService
    linking: LinkingService
    billing: BillingService
    payments: PaymentsService
    lookups: Budget  # the numbers from a bill: registration, Add another account, Pay My Bill
    checks: Budget  # per-field checks while filling in the registration form
    staff_auth: StaffAuthService
    console: ConsoleService
    oversight: OversightService
    methods: MethodsService
    autopay: AutoPayService
    scheduled: ScheduledService
    saved_pay: SavedPayService
    expiry: ExpiryService
    notices: NoticesService
    charger: Charger
    money_actions: Budget  # a resident's AutoPay, scheduled-payment and saved-method posts
    console_money: Budget  # a representative's cancels of AutoPay and scheduled payments

    @classmethod
    def build(cls, settings: Settings, env: Environment) -> Services:
        db = Database(settings.database)
        sender = OutboxSender(settings, db)
        mailer = Mailer(settings, env, on_enqueue=sender.wake)
        gateway = SandboxGateway(db, settings)
        processor = StripeGateway(settings) if settings.gateway == "stripe" else gateway
        payments = PaymentsService(db, settings, mailer, processor)
        gateway.notify = payments.handle_notification  # the sandbox "POSTs" its events here
        billing = BillingService(db, settings)
        autopay = AutoPayService(db, settings, mailer)
        scheduled = ScheduledService(db, settings)
        return cls(
            settings=settings,
            db=db,
            mailer=mailer,
            sender=sender,
            sandbox=gateway,
            registration=RegistrationService(db, settings, mailer),
            signin=SignInService(db, settings, mailer),
            recovery=RecoveryService(db, settings, mailer),
            profiles=ProfileService(db, settings, mailer),
            two_step=TwoStepService(db, settings, mailer),
            linking=LinkingService(db, settings, mailer),
            billing=billing,
            payments=payments,
            lookups=Budget(
                "lookups", settings.lookups_per_address, settings.lookups_overall, window=600
            ),
            checks=Budget(
                "checks", settings.checks_per_address, settings.checks_overall, window=60
            ),
            staff_auth=StaffAuthService(db, settings),
            console=ConsoleService(db, settings, mailer, billing, payments, autopay, scheduled),
            oversight=OversightService(db, settings),
            methods=MethodsService(db, settings, processor),
            autopay=autopay,
            scheduled=scheduled,
            saved_pay=SavedPayService(db, settings, payments),
            expiry=ExpiryService(db, settings, mailer),
            notices=NoticesService(db, settings, mailer),
            charger=Charger(db, settings, mailer, payments),
            money_actions=Budget("money_actions", per_network=30, overall=3000, window=600),
            console_money=Budget("console_money", per_network=30, overall=600, window=600),
        )

    def dependencies(self) -> dict[str, Provide]:
        """The one handler dependency, `services`: one object, not one dependency per
        service, because Litestar resolves a handler's several dependencies as one task
        each in a task group (a dashboard with five paid 150 µs of CPU for it)."""
        return {"services": Provide(_constant(self), use_cache=True, sync_to_thread=False)}


# A handler's parameter `services: AppServices` is this object (`services.billing` ...).
AppServices = NamedDependency[Services]


def _constant(value: object):
    def provide() -> object:
        return value

    return provide
