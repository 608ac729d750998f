//! Field validation for the REST API: each check returns a 422 naming the field.

use crate::error::AppError;

/// Trims and checks a required text field's length in characters; rejects control characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(AppError::invalid(
            field,
            format!("must be {min}–{max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if value.chars().any(is_bidi_or_invisible) {
        return Err(AppError::invalid(field, INVISIBLE_REFUSED));
    }
    Ok(value.to_owned())
}

/// What a text with a direction override or an invisible character is told.
pub const INVISIBLE_REFUSED: &str = "must not contain bidirectional overrides (U+202A–202E, U+2066–2069) or zero-width characters (U+200B–200F, U+2060, U+FEFF)";

/// Bidirectional embeddings/overrides/isolates and zero-width characters: they let a
/// nickname or a chat line look like something else (or like someone else).
pub fn is_bidi_or_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// The form blocked words are matched in: Unicode NFKC (full-width and compatibility
/// forms become their plain letters) then case folded (lowercase), so `ＳＰＡＭ`, `SpAm`
/// and `spam` are the same word.
pub fn matching_form(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc().flat_map(char::to_lowercase).collect()
}

/// An optional text field: empty becomes `None`.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, 1, max).map(Some),
    }
}

/// A login name: 3–32 of `A-Z a-z 0-9 _ . -`, starting with a letter (so it never looks
/// like a phone number).
pub fn username(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let valid = (3..=32).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(AppError::invalid(
            "username",
            "must be 3–32 letters, digits, _ . or -, starting with a letter",
        ))
    }
}

/// A phone number: an optional `+` and 6–20 digits.
pub fn phone(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or(value);
    if (6..=20).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(AppError::invalid(
            "phone",
            "must be 6–20 digits, optionally starting with +",
        ))
    }
}

/// A password: 8–128 characters.
pub fn password(value: &str) -> Result<(), AppError> {
    let chars = value.chars().count();
    if (8..=128).contains(&chars) {
        Ok(())
    } else {
        Err(AppError::invalid("password", "must be 8–128 characters"))
    }
}

/// An http(s) URL of at most 512 bytes.
pub fn url(field: &str, value: Option<&str>) -> Result<Option<String>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v)
            if v.len() <= 512
                && (v.starts_with("https://")
                    || v.starts_with("http://")
                    || v.starts_with('/'))
                && !v.chars().any(char::is_whitespace) =>
        {
            Ok(Some(v.to_owned()))
        }
        Some(_) => Err(AppError::invalid(
            field,
            "must be an http(s) URL of at most 512 characters",
        )),
    }
}

/// Up to 10 tags of 1–16 characters, deduplicated case-insensitively.
pub fn tags(field: &str, values: &[String]) -> Result<Vec<String>, AppError> {
    if values.len() > 10 {
        return Err(AppError::invalid(field, "at most 10 tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let tag = text(field, value, 1, 16)?;
        if !out.iter().any(|t| t.to_lowercase() == tag.to_lowercase()) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// Gender as a dating profile states it.
pub fn gender(value: Option<&str>) -> Result<Option<String>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v @ ("female" | "male" | "other")) => Ok(Some(v.to_owned())),
        Some(_) => Err(AppError::invalid("gender", "must be female, male or other")),
    }
}

/// Education levels a profile may state.
pub const EDUCATION_LEVELS: [&str; 5] =
    ["high_school", "college", "bachelor", "master", "doctorate"];

/// An education level, one of [`EDUCATION_LEVELS`].
pub fn education(value: Option<&str>) -> Result<Option<String>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if EDUCATION_LEVELS.contains(&v) => Ok(Some(v.to_owned())),
        Some(_) => Err(AppError::invalid(
            "education",
            "must be high_school, college, bachelor, master or doctorate",
        )),
    }
}

/// A height in centimetres, 120–230.
pub fn height_cm(value: Option<i64>) -> Result<Option<i64>, AppError> {
    match value {
        None => Ok(None),
        Some(h) if (120..=230).contains(&h) => Ok(Some(h)),
        Some(_) => Err(AppError::invalid("height_cm", "must be 120–230")),
    }
}

/// Most profile photos.
pub const MAX_PHOTOS: usize = 9;

/// The upload id in `/uploads/{id}.jpg` (what `POST /api/uploads` hands out), if `url` is one.
pub fn upload_id(url: &str) -> Option<&str> {
    let id = url.strip_prefix("/uploads/")?.strip_suffix(".jpg")?;
    (id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
}

/// Profile photos: at most [`MAX_PHOTOS`] distinct upload URLs (whether they exist is the
/// caller's check against storage).
pub fn photos(values: &[String]) -> Result<Vec<String>, AppError> {
    if values.len() > MAX_PHOTOS {
        return Err(AppError::invalid("photos", "at most 9 photos"));
    }
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let value = value.trim();
        if upload_id(value).is_none() {
            return Err(AppError::invalid(
                "photos",
                "each photo must be an upload URL (/uploads/{id}.jpg from POST /api/uploads)",
            ));
        }
        if !out.iter().any(|p| p == value) {
            out.push(value.to_owned());
        }
    }
    Ok(out)
}

/// A birth year of an adult (18+), not before 1900.
pub fn birth_year(value: Option<i64>, current_year: i64) -> Result<Option<i64>, AppError> {
    match value {
        None => Ok(None),
        Some(y) if (1900..=current_year - 18).contains(&y) => Ok(Some(y)),
        Some(_) => Err(AppError::invalid(
            "birth_year",
            format!("must be between 1900 and {} (18+)", current_year - 18),
        )),
    }
}

/// The current calendar year (UTC).
pub fn current_year() -> i64 {
    // Days since epoch → civil year (Howard Hinnant's algorithm).
    let days = crate::store::now_ms().div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked() {
        assert!(username("alice_01").is_ok());
        assert!(username("1alice").is_err());
        assert!(username("al").is_err());
        assert!(username("al ice").is_err());
        assert!(phone("+8613800138000").is_ok());
        assert!(phone("138-0013").is_err());
        assert!(password("short").is_err());
        assert!(text("nickname", "  小红  ", 1, 32).unwrap() == "小红");
        assert!(text("nickname", "a\u{0007}b", 1, 32).is_err());
        assert!(url("avatar_url", Some("javascript:alert(1)")).is_err());
        assert_eq!(
            tags("tags", &["a".into(), "A".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(gender(Some("unknown")).is_err());
        assert!(birth_year(Some(2020), 2026).is_err());
        assert_eq!(birth_year(Some(1990), 2026).unwrap(), Some(1990));
        assert!(current_year() >= 2025);
        assert!(height_cm(Some(119)).is_err());
        assert_eq!(height_cm(Some(230)).unwrap(), Some(230));
        assert!(education(Some("phd")).is_err());
        assert_eq!(
            education(Some("master")).unwrap().as_deref(),
            Some("master")
        );
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(upload_id(&format!("/uploads/{id}.jpg")), Some(id));
        assert!(upload_id("/uploads/../x.jpg").is_none());
        assert!(photos(&["https://evil.example/a.jpg".into()]).is_err());
        assert!(photos(&vec![format!("/uploads/{id}.jpg"); 10]).is_err());
    }
}
