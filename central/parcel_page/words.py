"""What the parcel page says, in English and Spanish, and which of the two a visitor reads."""

from __future__ import annotations

from dataclasses import dataclass

from central.notices.hours import Language

LANGUAGES: tuple[Language, ...] = ("en", "es")
LANGUAGE_NAMES: dict[Language, str] = {"en": "English", "es": "Español"}
_BY_CODE: dict[str, Language] = {"en": "en", "es": "es"}
# Past this many entries an Accept-Language header is not a browser's; the rest is ignored.
_MAX_ACCEPT_ENTRIES = 20


@dataclass(frozen=True, slots=True)
class StateWords:
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class ErrorWords:
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Words:
    site_name: str
    page_title: str
    skip_link: str
    language_nav: str
    status_label: str
    states: dict[str, StateWords]
    code_heading: str
    code_intro: str
    code_for_screen_readers: str
    code_missing: str
    qr_alt: str
    deadline_label: str
    deadline_after: str
    details_heading: str
    carrier_label: str
    tracking_label: str
    collected_label: str
    location_heading: str
    locker_label: str
    address_label: str
    hours_label: str
    map_link: str
    new_tab: str
    actions_heading: str
    resend_button: str
    resend_hint: str
    resend_unavailable: str
    extend_button: str
    extend_hint: str
    extend_used: str
    problem_heading: str
    problem_intro: str
    reason_label: str
    reasons: dict[str, str]
    message_label: str
    message_hint: str
    problem_button: str
    messages: dict[str, str]
    errors: dict[str, ErrorWords]
    footer: str


ENGLISH = Words(
    site_name="Parcel lockers",
    page_title="Your parcel",
    skip_link="Skip to content",
    language_nav="Language",
    status_label="Status",
    states={
        "reserved": StateWords(
            "On its way",
            "{carrier} is bringing your parcel to the locker below. When it is there, we will"
            " send you a message with your pickup code.",
        ),
        "deposited": StateWords(
            "Ready for pickup", "Your parcel is waiting for you in the locker below."
        ),
        "picked_up": StateWords(
            "Collected",
            "Your parcel has been collected from the locker {bank}. If it was not you who"
            " collected it, please report a problem below.",
        ),
        "expired": StateWords(
            "Returned to the carrier",
            "Your parcel was not collected in time, so it is going back to {carrier}. Please"
            " contact {carrier} about its delivery, quoting the tracking number.",
        ),
        "returned": StateWords(
            "Returned to the carrier",
            "Your parcel was not collected in time and has gone back to {carrier}. Please"
            " contact {carrier} about its delivery, quoting the tracking number.",
        ),
        "cancelled": StateWords(
            "Cancelled",
            "The delivery of this parcel to a locker was cancelled. Please contact {carrier}"
            " about your parcel, quoting the tracking number.",
        ),
    },
    code_heading="Your pickup code",
    code_intro="At the locker, scan the QR code or type the code on the screen.",
    code_for_screen_readers="Pickup code:",
    code_missing="Use the pickup code from the message we sent you.",
    qr_alt="QR code for pickup. You can type the pickup code on the locker's screen instead.",
    deadline_label="Collect by",
    deadline_after="After that, it goes back to {carrier}.",
    details_heading="Parcel",
    carrier_label="Carrier",
    tracking_label="Tracking number",
    collected_label="Collected",
    location_heading="Where to collect it",
    locker_label="Locker",
    address_label="Address",
    hours_label="Opening hours",
    map_link="Open the map",
    new_tab="(opens in a new tab)",
    actions_heading="Need more?",
    resend_button="Send my code again",
    resend_hint="We send it to the email address or phone number we have for you.",
    resend_unavailable=(
        "We have no email address or phone number to send your code to. Please contact"
        " {carrier} if you need it."
    ),
    extend_button="Extend my pickup time",
    extend_hint="Gives you {hours} more hours. You can do this once.",
    extend_used="You have already extended the pickup time.",
    problem_heading="Report a problem",
    problem_intro="Tell the locker's operators what went wrong; they will look into it.",
    reason_label="What went wrong?",
    reasons={
        "door_did_not_open": "The door did not open",
        "code_does_not_work": "The code does not work",
        "not_me": "I did not collect it",
        "parcel_damaged": "The parcel is damaged",
        "parcel_missing": "The parcel is missing or is not mine",
        "other": "Something else",
    },
    message_label="Tell us more (optional)",
    message_hint="Up to 500 characters. Please do not write your pickup code here.",
    problem_button="Send the report",
    messages={
        "resent": "We have sent your code again. It may take a few minutes to arrive.",
        "extended": "Done: you have more time to collect your parcel. The new deadline is below.",
        "reported": "Thank you. The locker's operators have your report and will look into it.",
        "not_ready": "That is only possible while your parcel is waiting in the locker.",
        "no_contact": (
            "We have no email address or phone number to send your code to. Please contact"
            " {carrier}."
        ),
        "resend_limit": (
            "You have asked for your code several times today. Please try again later."
        ),
        "extension_used": "You have already extended the pickup time once.",
        "extension_unavailable": "The pickup time cannot be extended any further.",
        "problem_limit": (
            "You reported a problem less than an hour ago. The operators are looking into it;"
            " you can send another report later."
        ),
        "problem_reason": "Please choose what went wrong.",
        "problem_too_long": "Your message is too long: 500 characters at most.",
        "problem_unavailable": "Problems cannot be reported for this parcel any more.",
        "busy": "Something changed at the same moment. Please try again.",
        "unavailable": "That did not work. Please try again later.",
    },
    errors={
        "not_found": ErrorWords(
            "This link does not work",
            "The link may be incomplete or mistyped. Please open the newest message about your"
            " parcel and use its link, or contact the carrier that sent your parcel.",
        ),
        "expired": ErrorWords(
            "This link has expired",
            "Links to a parcel's page work for a limited time. Please open the newest message"
            " about your parcel and use its link, or contact the carrier that sent your parcel.",
        ),
        "too_many": ErrorWords("Too many requests", "Please wait a minute, then try again."),
    },
    footer="This page is meant for you alone: please do not share its link.",
)

SPANISH = Words(
    site_name="Casilleros de paquetes",
    page_title="Su paquete",
    skip_link="Ir al contenido",
    language_nav="Idioma",
    status_label="Estado",
    states={
        "reserved": StateWords(
            "En camino",
            "{carrier} está llevando su paquete al casillero que se indica abajo. Cuando esté"
            " allí, le enviaremos un mensaje con su código de recogida.",
        ),
        "deposited": StateWords(
            "Listo para recoger", "Su paquete le espera en el casillero que se indica abajo."
        ),
        "picked_up": StateWords(
            "Recogido",
            "Su paquete se ha recogido del casillero {bank}. Si no lo recogió usted, avísenos"
            " más abajo.",
        ),
        "expired": StateWords(
            "Devuelto a la empresa de transporte",
            "Su paquete no se recogió a tiempo y se devolverá a {carrier}. Póngase en contacto"
            " con {carrier} para acordar la entrega e indique el número de seguimiento.",
        ),
        "returned": StateWords(
            "Devuelto a la empresa de transporte",
            "Su paquete no se recogió a tiempo y se ha devuelto a {carrier}. Póngase en"
            " contacto con {carrier} para acordar la entrega e indique el número de"
            " seguimiento.",
        ),
        "cancelled": StateWords(
            "Cancelado",
            "Se canceló la entrega de este paquete en un casillero. Póngase en contacto con"
            " {carrier} e indique el número de seguimiento.",
        ),
    },
    code_heading="Su código de recogida",
    code_intro="En el casillero, escanee el código QR o escriba el código en la pantalla.",
    code_for_screen_readers="Código de recogida:",
    code_missing="Use el código de recogida del mensaje que le enviamos.",
    qr_alt=(
        "Código QR para recoger el paquete. También puede escribir el código de recogida en"
        " la pantalla del casillero."
    ),
    deadline_label="Recoger hasta el",
    deadline_after="Después se devolverá a {carrier}.",
    details_heading="Paquete",
    carrier_label="Empresa de transporte",
    tracking_label="Número de seguimiento",
    collected_label="Recogido el",
    location_heading="Dónde recogerlo",
    locker_label="Casillero",
    address_label="Dirección",
    hours_label="Horario",
    map_link="Ver en el mapa",
    new_tab="(se abre en una pestaña nueva)",
    actions_heading="¿Necesita algo más?",
    resend_button="Enviarme el código otra vez",
    resend_hint="Se lo enviamos al correo electrónico o al teléfono que tenemos de usted.",
    resend_unavailable=(
        "No tenemos ningún correo electrónico ni teléfono al que enviar su código. Si lo"
        " necesita, póngase en contacto con {carrier}."
    ),
    extend_button="Ampliar el plazo de recogida",
    extend_hint="Le da {hours} horas más. Solo puede hacerlo una vez.",
    extend_used="Ya ha ampliado el plazo de recogida.",
    problem_heading="Avisar de un problema",
    problem_intro="Cuente a los operadores del casillero qué ha pasado; lo revisarán.",
    reason_label="¿Qué ha pasado?",
    reasons={
        "door_did_not_open": "La puerta no se abrió",
        "code_does_not_work": "El código no funciona",
        "not_me": "Yo no lo recogí",
        "parcel_damaged": "El paquete está dañado",
        "parcel_missing": "El paquete no está o no es el mío",
        "other": "Otra cosa",
    },
    message_label="Cuéntenos más (opcional)",
    message_hint="Hasta 500 caracteres. No escriba aquí su código de recogida.",
    problem_button="Enviar el aviso",
    messages={
        "resent": "Le hemos enviado el código otra vez. Puede tardar unos minutos en llegar.",
        "extended": "Hecho: tiene más tiempo para recoger su paquete. El nuevo plazo está abajo.",
        "reported": "Gracias. Los operadores del casillero tienen su aviso y lo revisarán.",
        "not_ready": "Eso solo es posible mientras su paquete espera en el casillero.",
        "no_contact": (
            "No tenemos ningún correo electrónico ni teléfono al que enviar su código."
            " Póngase en contacto con {carrier}."
        ),
        "resend_limit": ("Hoy ya ha pedido su código varias veces. Inténtelo de nuevo más tarde."),
        "extension_used": "Ya ha ampliado el plazo de recogida una vez.",
        "extension_unavailable": "El plazo de recogida no se puede ampliar más.",
        "problem_limit": (
            "Nos avisó de un problema hace menos de una hora. Los operadores lo están"
            " revisando; puede enviar otro aviso más tarde."
        ),
        "problem_reason": "Elija qué ha pasado.",
        "problem_too_long": "Su mensaje es demasiado largo: 500 caracteres como máximo.",
        "problem_unavailable": "Ya no se pueden enviar avisos sobre este paquete.",
        "busy": "Algo cambió en ese mismo momento. Inténtelo de nuevo.",
        "unavailable": "No ha funcionado. Inténtelo de nuevo más tarde.",
    },
    errors={
        "not_found": ErrorWords(
            "Este enlace no funciona",
            "Puede que el enlace esté incompleto o mal escrito. Abra el mensaje más reciente"
            " sobre su paquete y use su enlace, o póngase en contacto con la empresa de"
            " transporte que le envía el paquete.",
        ),
        "expired": ErrorWords(
            "Este enlace ha caducado",
            "Los enlaces a la página de un paquete funcionan durante un tiempo limitado. Abra el"
            " mensaje más reciente sobre su paquete y use su enlace, o póngase en contacto con"
            " la empresa de transporte que le envía el paquete.",
        ),
        "too_many": ErrorWords("Demasiadas solicitudes", "Espere un minuto y vuelva a intentarlo."),
    },
    footer="Esta página es solo para usted: no comparta su enlace.",
)

WORDS: dict[Language, Words] = {"en": ENGLISH, "es": SPANISH}
# Outcomes of an action that are confirmations; every other message key tells of a refusal.
CONFIRMATIONS: frozenset[str] = frozenset({"resent", "extended", "reported"})


def as_language(value: object) -> Language | None:
    """`value` when it names a language of the page, else None."""
    return _BY_CODE.get(value.strip().lower()) if isinstance(value, str) else None


def from_accept_language(header: str | None) -> Language | None:
    """The page's language the browser prefers most (`Accept-Language`), if it names one.

    Ties go to the one listed first; entries with q=0 or an unreadable q are refused, and
    nothing in the header makes this fail.
    """
    if not header:
        return None
    best: Language | None = None
    best_q = 0.0
    for entry in header.split(",")[:_MAX_ACCEPT_ENTRIES]:
        tag, *params = entry.split(";")
        language = as_language(tag.strip().split("-")[0])
        if language is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if 0.0 < q <= 1.0 and q > best_q:  # NaN fails both comparisons
            best, best_q = language, q
    return best


def choose_language(
    asked: str | None, recipient_language: object, accept_language: str | None
) -> Language:
    """`?lang=`, else the language the carrier gave for the recipient, else the browser's,
    else English."""
    return (
        as_language(asked)
        or as_language(recipient_language)
        or from_accept_language(accept_language)
        or "en"
    )
