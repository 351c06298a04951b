package ars

import "strconv"

// Kind is the GV100AD Textkennzeichen: what sort of Kreis, Gemeindeverband or
// Gemeinde an area is. Länder and Regierungsbezirke have the zero Kind.
type Kind uint8

// Kinds of Kreise (record type 40).
const (
	KreisfreieStadt Kind = 41
	Stadtkreis      Kind = 42
	KreisKind       Kind = 43 // "Kreis"
	Landkreis       Kind = 44
	Regionalverband Kind = 45
)

// Kinds of Gemeindeverbände (record type 50).
const (
	VerbandsfreieGemeinde   Kind = 50
	Amt                     Kind = 51
	Samtgemeinde            Kind = 52
	Verbandsgemeinde        Kind = 53
	Verwaltungsgemeinschaft Kind = 54
	Kirchspielslandgemeinde Kind = 55
	Verwaltungsverband      Kind = 56
	VGTraegermodell         Kind = 57
	ErfuellendeGemeinde     Kind = 58
)

// Kinds of Gemeinden (record type 60).
const (
	Markt                    Kind = 60
	KreisfreieStadtGemeinde  Kind = 61
	StadtkreisGemeinde       Kind = 62
	Stadt                    Kind = 63
	KreisangehoerigeGemeinde Kind = 64
	GemeindefreiesGebiet     Kind = 65 // inhabited
	GemeindefreiesGebietLeer Kind = 66 // uninhabited
	GrosseKreisstadt         Kind = 67
)

var kindNames = map[Kind]string{
	KreisfreieStadt:          "Kreisfreie Stadt",
	Stadtkreis:               "Stadtkreis",
	KreisKind:                "Kreis",
	Landkreis:                "Landkreis",
	Regionalverband:          "Regionalverband",
	VerbandsfreieGemeinde:    "verbandsfreie Gemeinde",
	Amt:                      "Amt",
	Samtgemeinde:             "Samtgemeinde",
	Verbandsgemeinde:         "Verbandsgemeinde",
	Verwaltungsgemeinschaft:  "Verwaltungsgemeinschaft",
	Kirchspielslandgemeinde:  "Kirchspielslandgemeinde",
	Verwaltungsverband:       "Verwaltungsverband",
	VGTraegermodell:          "VG Trägermodell",
	ErfuellendeGemeinde:      "Erfüllende Gemeinde",
	Markt:                    "Markt",
	KreisfreieStadtGemeinde:  "Kreisfreie Stadt",
	StadtkreisGemeinde:       "Stadtkreis",
	Stadt:                    "Stadt",
	KreisangehoerigeGemeinde: "Kreisangehörige Gemeinde",
	GemeindefreiesGebiet:     "gemeindefreies Gebiet, bewohnt",
	GemeindefreiesGebietLeer: "gemeindefreies Gebiet, unbewohnt",
	GrosseKreisstadt:         "große Kreisstadt",
}

// String returns the German label of the Textkennzeichen, or its number when
// the label is unknown.
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return strconv.Itoa(int(k))
}
