use super::*;

#[test]
fn offsets_map_to_lines_and_character_columns() {
    let text = "ab\ncdé\nf";
    assert_eq!(
        Location::at_offset(text, 0),
        Location { line: 1, column: 1 }
    );
    assert_eq!(
        Location::at_offset(text, 3),
        Location { line: 2, column: 1 }
    );
    // `é` is two bytes: the `\n` after it is the fourth character of line 2.
    assert_eq!(
        Location::at_offset(text, 7),
        Location { line: 2, column: 4 }
    );
    assert_eq!(
        Location::at_offset(text, 8),
        Location { line: 3, column: 1 }
    );
    assert_eq!(
        Location::at_offset(text, 99),
        Location { line: 3, column: 2 }
    );
}

#[test]
fn the_line_index_agrees_with_a_scan() {
    let text = "ab\ncdé\n\nf\n";
    let lines = Lines::new(text);
    for offset in 0..=text.len() + 2 {
        if text.is_char_boundary(offset.min(text.len())) {
            assert_eq!(
                lines.locate(offset),
                Location::at_offset(text, offset),
                "{offset}"
            );
        }
    }
}

#[test]
fn messages_are_lowercase_and_name_the_place() {
    let e = PolicyError::DuplicateId {
        id: "a".into(),
        location: Location { line: 4, column: 1 },
        first: Location { line: 1, column: 1 },
    };
    assert_eq!(
        e.to_string(),
        "duplicate policy id `a` at line 4, column 1 (first used at line 1, column 1)"
    );
}
