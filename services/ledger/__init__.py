from services.ledger.api import (
    MAX_AMOUNT,
    MAX_BALANCE,
    SPEND_ORDER,
    Balance,
    GrantResult,
    HistoryPage,
    HistoryRow,
    Ledger,
    Reservation,
)

__all__ = ["MAX_AMOUNT", "MAX_BALANCE", "SPEND_ORDER", "Balance", "GrantResult", "HistoryPage", "HistoryRow", "Ledger", "Reservation"]
