#ifndef MCM_CTYPE_H
#define MCM_CTYPE_H

#include <locale.h>
#include <wctype.h>

/// glibc's character classes of a given locale (<wctype.h>, which Swift's Glibc module does not expose), for the
/// `[[:class:]]` of `when` patterns: what `grep -E` means by them under that locale.
static inline unsigned long mcm_wctype(const char *name, locale_t locale) { return wctype_l(name, locale); }

static inline int mcm_iswctype(unsigned int character, unsigned long type, locale_t locale) {
    return iswctype_l((wint_t)character, (wctype_t)type, locale);
}

#endif
