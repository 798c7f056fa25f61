"""The image service's refusals in a support agent's words: each ``ImageServiceError`` carries a ``code``
(products/images.py); the admin shows the sentence for it, not the service's message for developers."""

from products.images import ImageServiceError

# Concurrent edits: the page reloads the product as it is now, which the sentence announces.
CHANGED_MEANWHILE = "Someone changed this product's photos a moment ago; here they are now."

SUPPORT_SENTENCES = {
    "images_changed": CHANGED_MEANWHILE,
    "invalid_order": CHANGED_MEANWHILE,
    "image_not_found": "That photo was removed a moment ago; here are the product's photos now.",
    "product_not_found": "This product no longer exists.",
    "invalid_position": "There is no such position among this product's photos: type a number from the list.",
    "label_stays_last": "The price label always stays last: make another photo the label, or clear the label, first.",
    "not_undoable": "That change deleted a photo, which cannot be put back from here.",
    "label_not_allowed": "A product needs two or more photos to have a price label.",
    "too_many_images": "This product has as many photos as a product may have.",
    "invalid_url": "That address is not one a photo may have.",
    "held_back": (
        "This product is held back from marketplaces until its original photo list is fixed: its photos cannot "
        "be changed here until then."
    ),
    "json_changed": (
        "This product's photos were changed in the old system and are not brought up to date here yet: try again "
        "once they are (the photo migration does it)."
    ),
    "not_migrated": "This product's photos have not been moved to the photo list yet: nothing can be changed here.",
    "marks_unreadable": (
        "The original photo list marks no single photo as the price label (a mark is unreadable, or several photos "
        "are marked): fix the marks there, or settle by the last photo."
    ),
}


def support_sentence(error: ImageServiceError) -> str:
    """What the agent reads for a refusal: the sentence for its code (the service's own words for a code
    without one, which a test keeps from happening)."""
    return SUPPORT_SENTENCES.get(error.code, str(error))
