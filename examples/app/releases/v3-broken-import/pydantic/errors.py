"""pydantic.errors.PydanticImportError as pydantic 2.12 defines it (message + the error-page line)."""


class PydanticImportError(ImportError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.message}\n\nFor further information visit https://errors.pydantic.dev/2.12/u/import-error"
